"""Every use of Faust, mode and aiokafka internals, fenced here (see INTERNALS.md in this folder)."""
