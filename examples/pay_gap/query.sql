-- Average compensation of women and of men in each job category, over every employer by
-- secure aggregation, and the women-to-men ratio: each average is revealed, so the
-- researcher divides them (the compiler places the join and the ratio at the receiver).
WITH women AS (
    SELECT job, COUNT(*) AS women, AVG(compensation) AS women_avg
    FROM employees WHERE gender = 'F' GROUP BY job
), men AS (
    SELECT job, COUNT(*) AS men, AVG(compensation) AS men_avg
    FROM employees WHERE gender = 'M' GROUP BY job
)
SELECT job, women, men, women_avg, men_avg, women_avg / men_avg AS ratio
FROM women JOIN men USING (job)
