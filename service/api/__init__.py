"""FastAPI routes: thin translations between HTTP and the data plane."""
