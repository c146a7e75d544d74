"""Document ingestion: parse uploaded files, chunk text by model tokens, index into the store."""
