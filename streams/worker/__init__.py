"""The stream worker deployable: wiring of the batch processor to Faust, its tables and timers."""
