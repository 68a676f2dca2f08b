"""Load run folders into pandas and report on them."""
