"""A regenerable, fully offline multi-label tagging corpus of synthetic music.

Every clip is a pure function of ``(seed, index)``: :func:`render_clip` draws all its random
choices from ``numpy.random.default_rng([seed, index])``, so a corpus is identical whatever the
worker count or order and can be regenerated bit-for-bit.  Rendering is plain NumPy/SciPy:
additive / wavetable synthesis per instrument family, Karplus-Strong for plucked strings,
noise and sine sweeps for drums, an exponentially decaying noise reverb.

Modules: :mod:`.instruments` (note synthesis, drum kit), :mod:`.score` (composition),
:mod:`.render` (plan to audio, metadata, tags), :mod:`.writer` (:func:`synth`: the corpus on disk).

Tags (the fixed vocabulary :data:`TAGS`) are derived from what was rendered:

* instrument families present (parts with at least one note inside the clip), ``drums``;
* tempo band: ``slow`` < 90 BPM <= ``medium`` <= 130 < ``fast``;
* ``major`` / ``minor``;
* texture: ``monophonic`` = one pitched line and never two notes at once; ``polyphonic`` = at
  least two independent melodic lines (melody + counter-melody, canon voices); ``homophonic`` =
  everything else (block chords, melody over chords / bass);
* the style (``chorale``, ``waltz``, ``march``, ``pop``, ``ambient``, ``etude``, ``solo``,
  ``canon``);
* ``reverb`` / ``dry``; ``loud`` / ``soft`` (velocity, hence timbre, and output peak level:
  loud peaks at 0.6-0.9, soft at 0.3-0.55 full scale).
"""
from .instruments import FAMILIES, N_VARIANTS, RANGES, drum_kit, midi_to_hz, render_note
from .render import TAGS, clip_metadata, clip_split, render_clip, tempo_band
from .score import (ETUDE_FAMILIES, KEYS, MAJOR, MELODIC, MINOR, PROGRESSIONS, STYLES,
                    TEMPI)
from .writer import (GENERATOR_VERSION, MANIFEST_COLUMNS, CorpusError, corpus_params, synth,
                     tag_counts)

__all__ = ["CorpusError", "ETUDE_FAMILIES", "FAMILIES", "GENERATOR_VERSION", "KEYS", "MAJOR",
           "MANIFEST_COLUMNS", "MELODIC", "MINOR", "N_VARIANTS", "PROGRESSIONS", "RANGES",
           "STYLES", "TAGS", "TEMPI", "clip_metadata", "clip_split", "corpus_params", "drum_kit",
           "midi_to_hz", "render_clip", "render_note", "synth", "tag_counts", "tempo_band"]
