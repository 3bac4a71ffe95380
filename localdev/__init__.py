"""Local-only tooling: the emulators, the demo estate's seed and the embedded Airflow stack.

Nothing here ships in the production image (``.dockerignore`` allow-lists ``include/``, not
``localdev/``), and production code under ``include/`` never imports it (tests/test_localdev.py checks).

    python -m localdev demo|up|down            # make demo / make up / make down
    python -m localdev.emulators start|stop|env
    python -m localdev.seed                    # seed config/estate.yaml into running emulators
"""
