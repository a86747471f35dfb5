"""Deep RL on Gymnasium, one file per algorithm."""
