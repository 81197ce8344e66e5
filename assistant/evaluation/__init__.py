"""The evaluation suite behind ``assistant eval``: perplexity, held-out tool-call metrics and
end-to-end agent tasks with programmatic oracles (see docs in models/README.md)."""
