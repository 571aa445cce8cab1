"""``python -m convfeat``: the same command line as the ``convfeat`` script."""
from .cli import main

main()
