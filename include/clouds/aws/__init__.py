"""AWS adapters: inventory listers and (later) capabilities, all through the Airflow provider's hooks."""
