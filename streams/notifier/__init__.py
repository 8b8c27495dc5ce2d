"""The notifier: what reaches each RM (pushes, digests)."""
