"""Pure, vectorised drift detection core: no I/O."""
