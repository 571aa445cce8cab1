"""`make bench`: run every benchmark in bench/ (each prints its own table)."""
import subprocess
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
for script in sorted(here.glob("*.py")):
    if script.name != "run.py" and not script.name.startswith("_"):
        print(f"== {script.name}", flush=True)
        subprocess.run([sys.executable, str(script)], check=True)
