"""KFP components: thin shells over ``medgo`` (parse inputs, call the library, write outputs).

Each component runs in the medgo runtime image on the cluster and in the current Python
environment under ``kfp.local``; heavy imports stay inside the library calls.
"""
