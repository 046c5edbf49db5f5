"""The flows: what the service does, without HTTP and without a database driver.

- `changes`: create, delete and rehydrate a resource (the Policy Engine, the record, the
  SPRM), and the deferred delete of a replaced instance;
- `queries`: get, list and health, on the event loop;
- `page_tokens`: the list's opaque page tokens;
- `reconciler`: settles operations whose owner is gone, and pending deletions;
- `drift`: the drift audit's scan and repairs; `drift_monitor`: the audit run inside the
  service, reported as metrics;
- `periodic`: the background thread both run in.
"""
