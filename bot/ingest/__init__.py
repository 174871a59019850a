"""Getting items in: fetch each source, parse and normalize its body, prepare it in a pool, and poll."""
