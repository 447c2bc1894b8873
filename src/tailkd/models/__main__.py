"""``python -m tailkd.models fetch NAME``: an embedded model fetched, checked and converted ahead of use."""

from tailkd.models.embedded import main

main()
