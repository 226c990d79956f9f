-- Mean and standard deviation of each brain segment's volume per age band, over both
-- hospitals' patients by secure aggregation. A patient's z-score is computed from them
-- at the researcher (run.py).
SELECT segment, age, COUNT(*) AS n, AVG(volume_ml) AS mean_ml, STDDEV(volume_ml) AS sd_ml
FROM mri_volumes
GROUP BY segment, age
