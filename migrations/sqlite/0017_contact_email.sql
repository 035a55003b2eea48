-- An email address the customer left to be answered at (asked for outside business hours,
-- `business_hours.outside_hours = "ask_email"`); not verified.
ALTER TABLE contacts ADD COLUMN email TEXT;
