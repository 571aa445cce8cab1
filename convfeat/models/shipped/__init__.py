"""The models shipped inside convfeat, one folder each (``<name>/model.json``, ``weights.npz``,
``MODEL_CARD.md``), installed as package data so that every install (wheel, ``pip install .``,
editable, a source checkout) has them.  Found through :data:`convfeat.models.trained.SHIPPED_DIR`;
written by ``make model``.  Data only: this module imports nothing.
"""
