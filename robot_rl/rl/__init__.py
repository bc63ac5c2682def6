"""Off-policy learners and their shared machinery (replay, networks, losses, checkpoints)."""
