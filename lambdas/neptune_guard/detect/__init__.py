"""Detection: what each account and region holds (inventory, graphs), the checks over it, and the scans that run them."""
