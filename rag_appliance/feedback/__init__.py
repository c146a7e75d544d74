"""Search logs, feedback on results and answers, and training pairs exported from them."""
