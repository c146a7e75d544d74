"""Fine-tuning the embedding model on query-document pairs (`rag-appliance finetune`)."""
