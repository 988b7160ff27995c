"""Networks: PT-DiT and the DiT / PixArt-alpha baselines."""
