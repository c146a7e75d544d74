"""Vector stores: the VectorStore protocol (base), its adapters and the helpers they share.

base (protocol, data types), validation (argument checks), provenance (what a collection
records), qdrant_filters (Filter -> Qdrant, one translator for both Qdrant bindings), registry
(backend name -> adapter); adapters: qdrant_edge (+ edge_layout, edge_hnsw), qdrant_server.
"""
