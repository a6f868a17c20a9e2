-- Why the approver rejected a turn's amount, on the turn (and so on its card and in every
-- manager's shape) until the amount is submitted again. The decision itself stays in
-- approval_decisions.
ALTER TABLE turns ADD COLUMN rejection_reason text;

UPDATE turns t SET rejection_reason = d.reason
  FROM (SELECT DISTINCT ON (turn_id) turn_id, reason FROM approval_decisions
         WHERE decision = 'REJECTED' ORDER BY turn_id, decided_at DESC) d
 WHERE d.turn_id = t.id AND t.approval_status = 'REJECTED';
