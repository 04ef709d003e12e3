"""One thin module per DVC stage; run each as `python -m stages.<name>`."""
