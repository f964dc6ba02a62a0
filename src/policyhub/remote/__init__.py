"""Remote repositories: a client of another installation's Policy API and its answer cache."""
