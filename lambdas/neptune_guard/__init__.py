"""Neptune Guard: find Amazon Neptune clusters and snapshots not protected by a customer-managed KMS key."""

__version__ = "0.1.0"
