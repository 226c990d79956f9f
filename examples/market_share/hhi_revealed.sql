-- The Herfindahl-Hirschman index when the per-company totals may be revealed: they are
-- in the result beside each share, so the index is computed at the researcher.
WITH per_company AS (
    SELECT company, SUM(revenue) AS revenue FROM sales GROUP BY company
), market AS (
    SELECT SUM(revenue) AS total FROM per_company
), shares AS (
    SELECT company, revenue, revenue / total AS share FROM per_company CROSS JOIN market
), concentration AS (
    SELECT SUM(share * share) * 10000 AS hhi FROM shares
)
SELECT company, revenue, share, hhi FROM shares CROSS JOIN concentration
