-- A SQLite workload for the allocator benchmark: build a table, index it,
-- query, update and delete.  The database is in memory, so its pages live
-- in malloc'ed memory; :rows (set by the suite) sizes it.  Prints a few
-- aggregates, which are the same under every allocator (the suite checks).
PRAGMA cache_size = -262144;
CREATE TABLE item(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, val REAL, note TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :rows)
INSERT INTO item
SELECT i, (i * 7919) % 1000, printf('item-%08d-%s', (i * 104729) % 1000003, hex(i * 31)),
       ((i * 2654435761) % 100000) / 100.0, substr(hex(randomblob(8)), 1, 8 + i % 40)
FROM n;
CREATE INDEX item_grp ON item(grp, val);
CREATE INDEX item_name ON item(name);
SELECT count(*), sum(grp), round(sum(val), 2) FROM item;
SELECT grp, count(*), round(avg(val), 3) FROM item GROUP BY grp ORDER BY 3 DESC LIMIT 5;
SELECT name FROM item ORDER BY name LIMIT 3;
SELECT count(DISTINCT substr(name, 6, 3)) FROM item;
SELECT a.grp, count(*) FROM item a JOIN item b ON a.id = b.id + 1 AND a.grp < b.grp
GROUP BY a.grp ORDER BY 2 DESC, 1 LIMIT 3;
UPDATE item SET note = note || name, val = val * 2 WHERE grp % 3 = 0;
DELETE FROM item WHERE grp % 5 = 1;
SELECT count(*), round(sum(val), 2), sum(length(note) > 0) FROM item;
SELECT group_concat(name, ',') IS NOT NULL FROM (SELECT name FROM item ORDER BY val DESC LIMIT 1000);
