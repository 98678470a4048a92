"""Instance backends: ``emu`` (netns + Click runtime) and ``xen`` (ClickOS domains)."""
