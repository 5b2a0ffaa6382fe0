"""Runtime plumbing every part shares and that knows nothing of the product: private files, one-line command errors."""
