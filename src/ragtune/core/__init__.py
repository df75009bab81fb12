"""The small core every stage stands on: config, records, storage, errors, caches."""
