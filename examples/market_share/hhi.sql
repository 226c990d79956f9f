-- The Herfindahl-Hirschman index alone: the sum of squared market shares (in percent).
-- Refused when compiled: squaring shares needs every company's total in the clear, and
-- this query does not reveal them (general MPC could, confide does not run it).
WITH per_company AS (
    SELECT company, SUM(revenue) AS revenue FROM sales GROUP BY company
), market AS (
    SELECT SUM(revenue) AS total FROM per_company
), shares AS (
    SELECT company, revenue / total AS share FROM per_company CROSS JOIN market
)
SELECT SUM(share * share) * 10000 AS hhi FROM shares
