"""``fcc sweep``: a spec -> a plan of ordinary run directories -> local processes or SLURM jobs."""
