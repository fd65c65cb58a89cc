"""Neural targets: recordings -> predictive model -> denoised similarity (method.md §2)."""
