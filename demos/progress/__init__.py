"""Progress reporting: a bound task calls update_state('PROGRESS', meta={'current', 'total'})."""
