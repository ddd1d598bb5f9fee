"""Small reusable widgets: the system header, the spinner."""
