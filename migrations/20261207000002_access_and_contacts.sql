-- How a vendor gets into a home (lockbox, gate code, alarm, pets): on the property, where every
-- turn of that home finds it, and in the vendor's shape of the homes they work in.
ALTER TABLE properties ADD COLUMN access_notes text
  CONSTRAINT properties_access_notes_length CHECK (length(access_notes) <= 1000);
