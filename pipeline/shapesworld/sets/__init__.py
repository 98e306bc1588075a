"""ShapesWorld sets with known truth, one module per user: ``retrieval`` (the retrieval seed set and
held-out benchmarks with exact FBCIR negatives), ``mtst`` (the MTST generator's seed pairs and
captions), ``filters`` (the filters' evaluation rows with injected bad texts).

Like the rest of pipeline/shapesworld/, these import no stage family (generators, filters, trainers,
flows): the families import them.
"""
