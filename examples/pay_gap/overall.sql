-- The same over all jobs: average compensation by gender and the women-to-men ratio.
WITH women AS (SELECT AVG(compensation) AS women_avg FROM employees WHERE gender = 'F'),
     men AS (SELECT AVG(compensation) AS men_avg FROM employees WHERE gender = 'M')
SELECT women_avg, men_avg, women_avg / men_avg AS ratio
FROM women CROSS JOIN men
