from proofloop.search.pool import Pool
class Adaptive(Pool):
    pass
