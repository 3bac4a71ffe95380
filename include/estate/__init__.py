"""The local three-cloud estate: emulators, connections and the seed."""
