"""Multi-cloud inventory: listers per cloud and service, a bounded collector, a versioned dataset."""
