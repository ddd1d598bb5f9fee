"""One pane per module; each is a Widget listed in tui.app.PANES."""
