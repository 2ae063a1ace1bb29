"""Child process for the restart test: registers device TDs with a small flush threshold, prints each
acknowledged id and its store's flush count, then is killed with -9 by the test."""

from __future__ import annotations

import sys

import ontology.store
from edge.profiles import PROFILES
from ontology.directory import Directory
from ontology.store import open_store
from ontology.thing_description import device_iri, thing_description

if __name__ == "__main__":
    ontology.store.FLUSH_AFTER_BYTES = int(sys.argv[2])
    store = open_store(sys.argv[1])
    directory = Directory(store)
    profiles = sorted(PROFILES)
    i = 0
    while True:
        device_id = f"dev-{i}"
        directory.put(device_iri(device_id), thing_description(PROFILES[profiles[i % len(profiles)]], device_id))
        print(i, store.flushes, store.unflushed_bytes, flush=True)  # acknowledged: put returned
        i += 1
