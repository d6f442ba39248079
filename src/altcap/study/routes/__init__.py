"""One router per resource: participant pages, admin pages, exports."""
