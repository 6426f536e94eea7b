"""cinepatch's studio: the page, the job queue, the library and the Videos API (studio -> engine, never back)."""
import engine  # noqa: F401  (first: it sets the CPU thread policy before anything loads torch)
