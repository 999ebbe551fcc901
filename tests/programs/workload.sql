-- An allocation-heavy SQLite workload with a deterministic output: a table
-- of 100k rows, indexes, grouping, ordering, joins, updates and deletes.
PRAGMA cache_size = -65536;
CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, val REAL, note TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000)
INSERT INTO t
SELECT x, x % 97, printf('n%06d-%s', (x * 7919) % 100003, hex(x * 31)),
       (x * 37 % 1000) / 10.0, printf('%.*c', x % 200, 'z')
FROM c;
CREATE INDEX t_grp ON t(grp, val);
CREATE INDEX t_name ON t(name);
SELECT count(*), sum(val), min(name), max(name), sum(length(note)) FROM t;
SELECT grp, count(*), round(sum(val), 1), min(name), max(name) FROM t
GROUP BY grp ORDER BY grp;
SELECT name, val FROM t WHERE grp = 13 ORDER BY val DESC, name LIMIT 20;
SELECT substr(name, 1, 4) AS p, count(*), round(avg(val), 3) FROM t
GROUP BY p ORDER BY count(*) DESC, p LIMIT 30;
CREATE TABLE g AS SELECT grp, group_concat(id, ',') AS ids FROM
  (SELECT grp, id FROM t WHERE id % 10 = 0 ORDER BY id) GROUP BY grp;
SELECT grp, length(ids), substr(ids, 1, 40) FROM g ORDER BY length(ids) DESC, grp LIMIT 10;
SELECT a.grp, count(*) FROM t AS a JOIN t AS b ON a.id = b.id + 1 AND a.grp = b.grp + 1
GROUP BY a.grp ORDER BY a.grp LIMIT 10;
UPDATE t SET val = val * 2, note = note || note WHERE id % 3 = 0;
DELETE FROM t WHERE id % 5 = 0;
SELECT count(*), round(sum(val), 1), sum(length(note)) FROM t;
SELECT grp, count(DISTINCT val) FROM t GROUP BY grp HAVING count(*) > 800 ORDER BY 2 DESC, 1 LIMIT 10;
SELECT name FROM t ORDER BY name DESC LIMIT 5 OFFSET 50000;
DROP INDEX t_name;
REINDEX t_grp;
SELECT count(*) FROM t WHERE name LIKE 'n00%';
