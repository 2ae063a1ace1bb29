"""Task families: each device draws its own task and streams samples from it."""
