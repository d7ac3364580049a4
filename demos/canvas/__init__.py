"""Canvas: chains, groups, chords, nested workflows, link/link_error, custom Task classes."""
