"""Collections: what a collection is (provenance, commit flag, documents) and user filters."""
