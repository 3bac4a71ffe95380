"""``python -m localdev.seed``: seed what config/estate.yaml describes into the running emulators."""

from localdev.seed import main

raise SystemExit(main())
