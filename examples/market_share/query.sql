-- Each company's revenue summed over the three chains by secure aggregation, the market's
-- total, and each company's share of it. The per-company totals are in the result, so the
-- researcher may see them: the total and the shares are computed there from them.
WITH per_company AS (
    SELECT company, SUM(revenue) AS revenue FROM sales GROUP BY company
), market AS (
    SELECT SUM(revenue) AS total FROM per_company
)
SELECT company, revenue, total, revenue / total AS share
FROM per_company CROSS JOIN market
